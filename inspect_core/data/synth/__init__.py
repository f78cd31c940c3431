"""The synthetic fabric generators behind ``inspect_core.data.synthetic_fabric``: the project's own style (cloth,
defects, photo effects), its randomised style (domain randomisation) and an independently written held-out family
that pretraining never sees (the test of generalisation)."""
