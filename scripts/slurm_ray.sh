#!/bin/bash
# asyncrl on a SLURM allocation, with --backend ray: Ray's documented head/worker recipe
# (https://docs.ray.io/en/latest/cluster/vms/user-guides/community/slurm.html): one
# `ray start --block` per node under srun, the head on the first node, then the driver
# (python -m asyncrl.run) on the first node, where the run folder is written and the
# parameter server runs.
#
#   sbatch scripts/slurm_ray.sh --algo a3c --env ALE/Pong-v5 --total-steps 80000000
#   WORKERS=120 sbatch --nodes=8 scripts/slurm_ray.sh --env MinAtar/Breakout-v1
#
# Every argument goes to `python -m asyncrl.run`. The environment (a venv where asyncrl and
# `.[ray]` are installed, the same on every node: load it before sbatch, srun passes it on)
# is the job's. WORKERS: actor-learners (default: every CPU of the allocation but one, the
# parameter server's). Token authentication (Ray >= 2.59): RAY_AUTH_MODE must be the same on
# every node; this script sets it to `token` with one fresh token for the job, which srun
# hands to every node with the rest of the environment (set RAY_AUTH_MODE=disabled before
# sbatch to turn it off on a trusted network).
#
#SBATCH --job-name=asyncrl-ray
#SBATCH --nodes=2
#SBATCH --exclusive
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=32
#SBATCH --time=04:00:00
#SBATCH --output=asyncrl-ray-%j.log

set -euo pipefail

export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
if [ "$RAY_AUTH_MODE" = token ] && [ -z "${RAY_AUTH_TOKEN:-}" ]; then
  RAY_AUTH_TOKEN="$(python -c 'import secrets; print(secrets.token_hex(32))')"
  export RAY_AUTH_TOKEN
fi

mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
head_node="${nodes[0]}"
head_ip="$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address | awk '{print $1}')"
port="${RAY_PORT:-6379}"
cpus="${SLURM_CPUS_PER_TASK:-$(nproc)}"

cleanup() {
  # the driver has ended its actors; stop every node's Ray and wait for the srun steps
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "asyncrl: Ray head on $head_node ($head_ip:$port), ${#nodes[@]} nodes of $cpus CPUs"
srun --nodes=1 --ntasks=1 -w "$head_node" \
  ray start --head --node-ip-address="$head_ip" --port="$port" --num-cpus="$cpus" \
  --include-dashboard=false --block &

# wait for the head's GCS before the other nodes join (bounded: 120 s)
for _ in $(seq 1 120); do
  if python -c "import socket, sys; socket.create_connection(('$head_ip', $port), timeout=1).close()" 2>/dev/null; then
    break
  fi
  sleep 1
done

for node in "${nodes[@]:1}"; do
  srun --nodes=1 --ntasks=1 -w "$node" \
    ray start --address="$head_ip:$port" --num-cpus="$cpus" --block &
done

workers="${WORKERS:-$(( ${#nodes[@]} * cpus - 1 ))}"
# the driver waits for the cluster's CPUs itself only up to its start: give the nodes time to join
for _ in $(seq 1 120); do
  joined="$(python -c "import ray; ray.init(address='$head_ip:$port', logging_level='ERROR'); print(int(ray.cluster_resources().get('CPU', 0)))" 2>/dev/null || echo 0)"
  [ "$joined" -ge "$workers" ] && break
  sleep 2
done

python -m asyncrl.run --backend ray --address "$head_ip:$port" --workers "$workers" "$@"
