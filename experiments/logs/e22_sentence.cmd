2026-11-28T17:50:08Z python -m core attack --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level sentence --poison-ratio 0.01
