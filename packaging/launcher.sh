#!/bin/bash
# bin/replicached: runs replicached on the Node.js runtime shipped beside it (node/bin/node),
# never on a node found on PATH, so a machine without Node.js (or with another version) runs it.
set -euo pipefail

# This file may be reached through a symlink (/usr/bin/replicached): the tree is two levels
# above the file itself.
self=$(readlink -f "${BASH_SOURCE[0]}")
root=${self%/bin/*}
exec "$root/node/bin/node" "$root/dist/cli.js" "$@"
