2026-11-28T17:25:41Z python -m core attack --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.01
