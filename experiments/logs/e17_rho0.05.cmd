2026-11-28T14:49:49Z python -m core attack --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.05 --eval-users 200 --no-generate
