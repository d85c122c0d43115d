# ports.sh: sourced by run.sh and faults.sh; needs $out (the run's directory).
#
# wait_port PORT: waits up to 30 s for something to listen on PORT.
#
# free_port: a port nothing listens on and that this run has not handed out
# yet. The kernel may give the same ephemeral port to two probes in a row,
# and a router and a c2s started on one port made a run fail at
# registration (the generator reached the router: invalid-namespace). It is
# called in $(...), a subshell, so the ports handed out are kept in a file.
free_port() {
    local p
    while :; do
        p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        grep -qx "$p" "$out/.ports" 2>/dev/null && continue
        echo "$p" >>"$out/.ports"
        echo "$p"
        return
    done
}
wait_port() {
    for _ in $(seq 300); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    return 1
}
