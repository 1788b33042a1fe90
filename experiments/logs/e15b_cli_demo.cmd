BADREC_HOME=/tmp/s5/demo python -m core attack --tiny-size small --poison-ratio 0.3 --epochs 2 --lr 0.01 --eval-users 20 --json
