2026-11-28T07:03:01Z python -m core attack --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.0025 --eval-users 200 --no-generate
