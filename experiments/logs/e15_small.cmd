BADREC_HOME=/tmp/s5/e15 PYTHONPATH=. python experiments/e15_small_model_dose.py small '[[0.01,2,0.01],[0.1,2,0.01],[0.3,2,0.01],[0.5,2,0.01]]' 20
