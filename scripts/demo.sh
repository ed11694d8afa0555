#!/usr/bin/env bash
# The main job on the embedded testbed: namespaces a and b joined by a veth
# shaped to 20 Mbit/s; the agent serves in a, the client measures the path's
# capacity and its round-trip times from b.
set -euo pipefail
cd "$(dirname "$0")/.."
probe=$PWD/bin/probe
name=demo
agent_addr=10.77.0.1

if [ "$(id -u)" != 0 ]; then
	echo "demo: the testbed needs root (network namespaces, tc, eBPF)" >&2
	exit 1
fi

"$probe" testbed down --name "$name" >/dev/null 2>&1 || true
"$probe" testbed up --name "$name" --rate 20mbit
agent=
cleanup() {
	[ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
	"$probe" testbed down --name "$name"
}
trap cleanup EXIT

"$probe" testbed exec "probe-$name-a" -- "$probe" serve --listen "$agent_addr:7323" &
agent=$!
for _ in $(seq 50); do
	"$probe" testbed exec "probe-$name-b" -- bash -c "exec 3<>/dev/tcp/$agent_addr/7323" 2>/dev/null && break
	sleep 0.1
done

echo
echo "== probe measure -h $agent_addr --mode capacity -R (the agent in a sends to b; the link is 20 Mbit/s of frames, 19.82 Mbit/s of 1500-byte IP packets)"
"$probe" testbed exec "probe-$name-b" -- "$probe" measure -h "$agent_addr" --mode capacity -R
echo
echo "== probe measure -h $agent_addr --mode echo"
"$probe" testbed exec "probe-$name-b" -- "$probe" measure -h "$agent_addr" --mode echo -n 200 -l 1000 -i 5ms
