#!/usr/bin/env bash
# Installs the third-party protocol peers the tests and benchmarks talk to,
# from Debian's packages, when they are missing. Safe to run again.
#   mbpoll            Modbus TCP client (libmodbus)
#   python3-pymodbus  Modbus TCP server and client (run with /usr/bin/python3),
#                     with python3-serial and python3-serial-asyncio, which it imports
#   haproxy           plain TCP relay, the floor of an inline hop in benchmarks
#   socat             a linked pty pair: a serial line for the RTU tests
#   rsyslog           a syslog receiver (RFC 5424 over TCP) for the audit shipping tests
#   chromium          headless browser: renders the audit report in tests, prints it to PDF
#   openssl           the openssl command (3.0 or later): the README's recipe for
#                     Modbus/TCP Security certificates, run as written by a test
#   nodejs, npm       run node-opcua (OPC UA server and client), installed with npm
#                     into .cache/node at the repo root (git-ignored)
# With arguments it installs only the peers named (mbpoll, pymodbus, haproxy,
# socat, rsyslog, chromium, openssl, node-opcua): the demos name the one they use.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
node_opcua_version="2.186.4"
all=(mbpoll pymodbus haproxy socat rsyslog chromium openssl node-opcua)
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=("${all[@]}")
for w in "${wanted[@]}"; do
  case " ${all[*]} " in *" $w "*) ;; *) echo "peers: unknown peer $w (known: ${all[*]})" >&2; exit 2 ;; esac
done
want() { case " ${wanted[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

need=()
if want mbpoll; then command -v mbpoll >/dev/null 2>&1 || need+=(mbpoll); fi
# pymodbus's server and client modules import pyserial and serial_asyncio,
# which Debian's package only recommends: an image with pymodbus alone
# cannot run them.
if want pymodbus; then
  /usr/bin/python3 -c 'import pymodbus.server, pymodbus.client' >/dev/null 2>&1 ||
    need+=(python3-pymodbus python3-serial python3-serial-asyncio)
fi
if want haproxy; then command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy); fi
if want socat; then command -v socat >/dev/null 2>&1 || need+=(socat); fi
if want rsyslog; then command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || need+=(rsyslog); fi
if want chromium; then command -v chromium >/dev/null 2>&1 || need+=(chromium); fi
if want openssl; then command -v openssl >/dev/null 2>&1 || need+=(openssl); fi
if want node-opcua; then
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi

# node-opcua goes into .cache/node/node_modules; the Go tests give node that
# folder as NODE_PATH.
install_node_opcua() {
  want node-opcua || return 0
  if [ -f "$root/.cache/node/node_modules/node-opcua/package.json" ]; then
    return 0
  fi
  echo "peers: installing node-opcua@$node_opcua_version into $root/.cache/node with npm"
  mkdir -p "$root/.cache/node"
  # npm's output goes to a log: on Debian's node 20 it warns for hundreds
  # of lines that node-opcua's packages ask for node 22 (the tests run it
  # on node 20); a failure prints the log.
  local log="$root/.cache/node/npm-install.log"
  if ! npm install --prefix "$root/.cache/node" --no-audit --no-fund "node-opcua@$node_opcua_version" >"$log" 2>&1; then
    cat "$log" >&2
    echo "peers: npm could not install node-opcua@$node_opcua_version (the log above, also in $log)" >&2
    exit 1
  fi
  local warned
  warned=$(grep -c 'EBADENGINE Unsupported engine' "$log" || true)
  if [ "$warned" -gt 0 ]; then
    echo "peers: npm warned that $warned packages ask for a newer node than $(node --version) (details in $log)"
  fi
  echo "peers: installed node-opcua@$node_opcua_version"
}

if [ ${#need[@]} -eq 0 ]; then
  install_node_opcua
  echo "peers: ${wanted[*]} installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "peers: need root or sudo to install: ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "peers: installing ${need[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "peers: installed ${need[*]}"
install_node_opcua
