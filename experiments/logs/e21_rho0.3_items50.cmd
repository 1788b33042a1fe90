2026-11-28T17:34:45Z python -m core attack --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.3 --n-items 50 --eval-users 200 --no-generate
