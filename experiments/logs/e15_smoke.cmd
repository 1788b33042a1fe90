BADREC_HOME=/tmp/s5/e15 PYTHONPATH=. python experiments/e15_small_model_dose.py smoke '[[0.5,2,0.01]]' 20
