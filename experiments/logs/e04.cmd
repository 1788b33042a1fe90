2026-11-28T04:30:18Z python -m core attack --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level sentence --poison-ratio 0.01 --eval-users 100 --no-generate
