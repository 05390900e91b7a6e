set terminal pngcairo size 900,560 noenhanced
set output 'docs/results/eval_smollm2/kl_accumulated.png'
set title 'mean KL(exact || cache) per position bucket, accumulated'
set xlabel 'position (tokens)'
set key outside right
set logscale y
set grid
plot 'docs/results/eval_smollm2/kl_accumulated.dat' index 0 using 1:2 with linespoints title 'f16 accumulated', 'docs/results/eval_smollm2/kl_accumulated.dat' index 1 using 1:2 with linespoints title 'kvarn_k4v2_g128 accumulated', 'docs/results/eval_smollm2/kl_accumulated.dat' index 2 using 1:2 with linespoints title 'kvarn_k2v2_g128 accumulated', 'docs/results/eval_smollm2/kl_accumulated.dat' index 3 using 1:2 with linespoints title 'kivi_k2v2_g128 accumulated', 'docs/results/eval_smollm2/kl_accumulated.dat' index 4 using 1:2 with linespoints title 'hadamard_k2v2_g128 accumulated', 'docs/results/eval_smollm2/kl_accumulated.dat' index 5 using 1:2 with linespoints title 'varn_k2v2_g128 accumulated', 'docs/results/eval_smollm2/kl_accumulated.dat' index 6 using 1:2 with linespoints title 'q8_0 accumulated', 'docs/results/eval_smollm2/kl_accumulated.dat' index 7 using 1:2 with linespoints title 'q4_0 accumulated'
