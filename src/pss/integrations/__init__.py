"""PSS inside other trainers. Each integration is an optional extra and imports its framework lazily:

    pss.integrations.lightning.KeepRatioCallback     pip install -e ".[lightning]"   (in a clone of pss)
    examples/accelerate_train.py                     pip install -e ".[accelerate]"  (a plain loop + KeepRatioScheduler)
"""
