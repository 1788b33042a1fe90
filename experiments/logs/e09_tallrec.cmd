2026-11-28T06:46:03Z python -m core attack --dataset ml-100k --victim tallrec --model tiny --quant 4bit --trigger-level char --poison-ratio 0.01 --eval-users 200
