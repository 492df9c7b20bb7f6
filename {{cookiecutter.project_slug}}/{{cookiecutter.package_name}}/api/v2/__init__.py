"""The Open Inference Protocol v2 (KServe, Triton): routes.py (the routes), tensors.py (JSON
and binary tensors), signature.py (how a model declares its tensors), schema.py (docs)."""
