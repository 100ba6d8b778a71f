"""PSS inside other trainers. Each integration is an optional extra and imports its framework lazily:

    pss.integrations.lightning.KeepRatioCallback     pip install "pss[lightning]"
    examples/accelerate_train.py                     pip install "pss[accelerate]"  (a plain loop + KeepRatioScheduler)
"""
