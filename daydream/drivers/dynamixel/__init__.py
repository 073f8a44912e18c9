"""Dynamixel servos (Protocol 2.0): the packet format (`protocol`), an arm of X-series servos behind
the driver interface (`arm.DynamixelArm`, registry name `dynamixel_arm`) and an emulated bus on a
pseudo-terminal for tests (`emulator.EmulatedBus`). Submodules are imported on use, so importing
the package stays cheap."""
