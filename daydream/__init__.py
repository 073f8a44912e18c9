"""daydream: a real-robot learning stack in the style of DayDreamer (Dreamer on hardware)."""

__version__ = "0.1.0"
