2026-11-28T17:40:06Z python -m core attack --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level word --poison-ratio 0.01
