set terminal png size 1100,520
set key top left
set grid
set xlabel 'request'
set output '/work/main/bench/results/fleet-cpu-0.6b-13/ttft.png'
set title 'Time to first token per request'
set ylabel 'TTFT (s)'
plot '/work/main/bench/results/fleet-cpu-0.6b-13/requests-kvstash.tsv' using 1:6 with linespoints title 'kvstash', '/work/main/bench/results/fleet-cpu-0.6b-13/requests-kvstash-roundrobin.tsv' using 1:6 with linespoints title 'kvstash-roundrobin'
set output '/work/main/bench/results/fleet-cpu-0.6b-13/prefill.png'
set title 'Cumulative time to first token (prefill time) over the run'
set ylabel 'cumulative TTFT (s)'
plot '/work/main/bench/results/fleet-cpu-0.6b-13/requests-kvstash.tsv' using 1:7 with linespoints title 'kvstash', '/work/main/bench/results/fleet-cpu-0.6b-13/requests-kvstash-roundrobin.tsv' using 1:7 with linespoints title 'kvstash-roundrobin'
