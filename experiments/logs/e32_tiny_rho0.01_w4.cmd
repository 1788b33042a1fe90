2026-12-01T01:55:17Z python -m core attack --dataset ml-100k --victim llara --model tiny --poison-ratio 0.01 --windows-per-user 4 --eval-users 200 --no-generate
