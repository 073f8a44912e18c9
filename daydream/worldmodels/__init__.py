"""World Models (Ha & Schmidhuber 2018): a VAE that compresses frames (V), an MDN-RNN that
predicts the next latent (M) and a small linear controller trained by CMA-ES (C).

`vae` (V), `mdnrnn` (M) and `controller` (C and its CMA-ES search) hold the three parts
and the maths they are tested on.
"""
