"""The two broker wire formats the mock speaks: iifl_v1 (/v1) and xts (/interactive), on one pipeline."""
