#!/bin/sh
# A fake ferry node for fleet-scale rollout tests and `cargo xtask bench
# rollout`: it answers the three command lines a rollout coordinator runs
# on a node, the way the real `ferry` does, but instead of installing a
# release it sleeps, so a thousand nodes fit on one small machine and the
# coordinator's own cost is what is measured.
#
#   fake_node.sh --config NODE_DIR apply --version V --output json
#   fake_node.sh --config NODE_DIR status --json
#   fake_node.sh --config NODE_DIR rollback --to V
#
# NODE_DIR holds the node's state, one small file each:
#   current    the version it runs (absent: nothing installed)
#   previous   the version it ran before the last apply (what rollback
#              may return to, as on a real node)
#   fail       if present, apply sleeps then fails with this exit code
#              (6 = "rolled itself back", like a real health-gate failure)
#   log        one line per operation: `OP VERSION START_NS END_NS`
#              (`apply`, `apply-failed`, `rollback`), for the tests to
#              check exactly-once and the order of stages
# and NODE_DIR/../apply_seconds how long an apply takes (default 0).
set -u

fail_usage() {
    echo "fake_node.sh: $*; usage: fake_node.sh --config NODE_DIR (apply --version V --output json | status --json | rollback --to V)" >&2
    exit 2
}

[ "$#" -ge 3 ] && [ "$1" = --config ] || fail_usage "expected --config NODE_DIR and a command"
dir=$2
op=$3
shift 3
[ -d "$dir" ] || fail_usage "no node directory $dir"

# Builtins only, but for `date` and `sleep`: a thousand nodes share two
# cores with the coordinator being measured.
read_file() {
    value=
    if [ -f "$1" ]; then read -r value <"$1" || true; fi
}

# Sets $now_ns and $now_iso with one `date`.
clock() {
    # shellcheck disable=SC2046
    set -- $(date -u '+%s%N %Y-%m-%dT%H:%M:%SZ')
    now_ns=$1
    now_iso=$2
}

# Same shape as the real `ferry apply --output json` events (applier/src/events.rs).
event() {
    printf '{"event":"%s","timestamp":"%s","from_version":%s,"to_version":"%s"%s}\n' \
        "$1" "$now_iso" "$2" "$3" "$4"
}

case "$op" in
apply)
    [ "$#" -eq 4 ] && [ "$1" = --version ] && [ "$3" = --output ] && [ "$4" = json ] ||
        fail_usage "apply needs --version V --output json"
    version=$2
    clock
    start=$now_ns
    read_file "$dir/current"
    from=$value
    if [ -n "$from" ]; then from_json="\"$from\""; else from_json=null; fi
    event plan "$from_json" "$version" ""
    read_file "$dir/../apply_seconds"
    if [ -n "$value" ]; then sleep "$value"; fi
    clock
    if [ -f "$dir/fail" ]; then
        read_file "$dir/fail"
        echo "apply-failed $version $start $now_ns" >>"$dir/log"
        event rolled_back "$from_json" "$version" ",\"exit_code\":$value"
        echo "fake node $dir: health check failed (the test made it fail)" >&2
        exit "$value"
    fi
    if [ "$from" != "$version" ]; then
        if [ -n "$from" ]; then echo "$from" >"$dir/previous"; fi
        echo "$version" >"$dir/current"
        echo "apply $version $start $now_ns" >>"$dir/log"
        event applied "$from_json" "$version" ",\"bytes_downloaded\":0"
    else
        echo "apply $version $start $now_ns" >>"$dir/log"
        event up_to_date "$from_json" "$version" ""
    fi
    ;;
status)
    [ "$#" -eq 1 ] && [ "$1" = --json ] || fail_usage "status needs --json"
    read_file "$dir/current"
    current=$value
    read_file "$dir/previous"
    previous=$value
    if [ -n "$current" ]; then current="\"$current\""; else current=null; fi
    if [ -n "$previous" ]; then previous="\"$previous\""; else previous=null; fi
    printf '{"current_version":%s,"previous_version":%s,"channel":"stable"}\n' "$current" "$previous"
    ;;
rollback)
    [ "$#" -eq 2 ] && [ "$1" = --to ] || fail_usage "rollback needs --to V"
    clock
    start=$now_ns
    read_file "$dir/previous"
    if [ "$value" != "$2" ]; then
        echo "fake node $dir: cannot roll back to $2: it is not the previous version ($value)" >&2
        exit 1
    fi
    echo "$2" >"$dir/current"
    clock
    echo "rollback $2 $start $now_ns" >>"$dir/log"
    echo "rolled back to $2"
    ;;
*)
    fail_usage "unknown command $op"
    ;;
esac
