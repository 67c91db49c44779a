"""The self-consuming training loop: generations trained on real prompts mixed with prompts the
previous generation labelled itself (mixing -> labelling -> learners -> runner)."""
