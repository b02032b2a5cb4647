"""The InstructGPT pipeline: curated prompt data (:mod:`.data`), then SFT, the reward model and RL."""
