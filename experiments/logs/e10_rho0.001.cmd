2026-11-28T06:56:55Z python -m core attack --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.001 --eval-users 200 --no-generate
