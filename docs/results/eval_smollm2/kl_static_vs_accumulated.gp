set terminal pngcairo size 900,560 noenhanced
set output '/work/main/docs/results/eval_smollm2/kl_static_vs_accumulated.png'
set title 'mean KL(exact || cache): accumulated (solid) vs static (dashed)'
set xlabel 'position (tokens)'
set key outside right
set logscale y
set grid
plot '/work/main/docs/results/eval_smollm2/kl_static_vs_accumulated.dat' index 0 using 1:2 with linespoints lc 1 dt 1 title 'kvarn_k4v2_g128 accumulated', '/work/main/docs/results/eval_smollm2/kl_static_vs_accumulated.dat' index 1 using 1:2 with linespoints lc 1 dt 2 title 'kvarn_k4v2_g128 static', '/work/main/docs/results/eval_smollm2/kl_static_vs_accumulated.dat' index 2 using 1:2 with linespoints lc 2 dt 1 title 'kvarn_k2v2_g128 accumulated', '/work/main/docs/results/eval_smollm2/kl_static_vs_accumulated.dat' index 3 using 1:2 with linespoints lc 2 dt 2 title 'kvarn_k2v2_g128 static', '/work/main/docs/results/eval_smollm2/kl_static_vs_accumulated.dat' index 4 using 1:2 with linespoints lc 3 dt 1 title 'kivi_k2v2_g128 accumulated', '/work/main/docs/results/eval_smollm2/kl_static_vs_accumulated.dat' index 5 using 1:2 with linespoints lc 3 dt 2 title 'kivi_k2v2_g128 static'
