#!/usr/bin/env bash
# scanbox installer: puts the payment box daemon on a Raspberry Pi (or any Debian-like machine with systemd).
#
#   sudo scripts/install.sh [--root DIR] [--no-enable] [--scanner-usb VID:PID[:SERIAL]] [--register-usb VID:PID[:SERIAL]]
#   sudo scripts/install.sh --uninstall [--root DIR]
#   sudo scripts/install.sh --backend [--backend-db URL] [--root DIR] [--no-enable]
#                                                                     the merchant backend instead of a box
#   sudo scripts/install.sh --backend --uninstall [--root DIR]
#
# Run it from a checkout or an unpacked release in which `npm ci` (or `npm install`) has built dist/.
# Running it again updates the box: the application is replaced, the configuration in /etc/scanbox and the
# journal in /var/lib/scanbox are never touched. Besides the daemon's unit it installs the daily reconciliation
# (scanbox-reconcile.service, started by scanbox-reconcile.timer). See hardware.md for the whole installation.
#
# --backend installs `scanbox backend` (contract §8) on the merchant's server instead: the same application in
# /opt/scanbox, its own user scanbox-backend, /etc/scanbox-backend/backend.env, /var/lib/scanbox-backend (its
# journal and CA), scanbox-backend.service and scanbox-backend-reconcile.timer (the merchant's whole bill against
# the backend's journal every morning); no udev rules, no serial groups.
set -euo pipefail

readonly APP_USER=scanbox
readonly UNIT=scanbox.service
# The daily reconciliation: a oneshot service that only its timer starts (the timer is what gets enabled).
readonly RECONCILE_UNIT=scanbox-reconcile.service
readonly RECONCILE_TIMER=scanbox-reconcile.timer
readonly DEFAULT_NODE=/usr/bin/node
readonly SECRETS=(apikey apiclient_cert.pem apiclient_key.pem)
# --backend: the merchant backend (the same secrets, in its own /etc/scanbox-backend).
readonly BACKEND_USER=scanbox-backend
readonly BACKEND_UNIT=scanbox-backend.service
readonly BACKEND_RECONCILE_UNIT=scanbox-backend-reconcile.service
readonly BACKEND_RECONCILE_TIMER=scanbox-backend-reconcile.timer

SRC=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
readonly SRC

ROOT=""
UNINSTALL=0
ENABLE=1
BACKEND=0
BACKEND_DB=""
SCANNER_USB=""
REGISTER_USB=""

usage() {
  cat <<'EOF'
usage: sudo scripts/install.sh [options]

  --root DIR                       install into DIR instead of / (an image, a test): no user is created,
                                   systemctl and udevadm are not run; what they would do is printed
  --no-enable                      install, but do not enable the service at boot nor the daily
                                   reconciliation timer
  --scanner-usb VID:PID[:SERIAL]   write the udev rule naming the scanner /dev/scanbox-scanner
  --register-usb VID:PID[:SERIAL]  write the udev rule naming the register line /dev/scanbox-register
                                   (find the values with: udevadm info -a -n /dev/ttyUSB0)
  --uninstall                      stop and remove the service, the reconciliation timer and the
                                   application; keeps the journal
                                   (/var/lib/scanbox), the configuration and credentials (/etc/scanbox)
                                   and the user scanbox
  --backend                        install the merchant backend (scanbox backend, on the merchant's
                                   server) instead of a box: the user scanbox-backend, /etc/scanbox-backend,
                                   /var/lib/scanbox-backend and scanbox-backend.service; with --uninstall,
                                   remove it (keeps its journal, CA, configuration and credentials)
  --backend-db URL                 with --backend: its journal in PostgreSQL (a chain: several backends
                                   on one database), postgres://USER@HOST[:PORT][,HOST[:PORT]...]/DB
                                   naming the primary and its standbys; never a password in it: put the
                                   password in /etc/scanbox-backend/dbpassword (root, 0600), loaded as the
                                   credential dbpassword
  -h, --help                       this text
EOF
}

say() { printf 'scanbox install: %s\n' "$*"; }
warn() { printf 'scanbox install: WARNING: %s\n' "$*" >&2; }
die() {
  printf 'scanbox install: ERROR: %s\n' "$*" >&2
  exit 1
}
# Bad usage exits 2, like the scanbox command itself.
usage_error() {
  printf 'scanbox install: ERROR: %s (see --help)\n' "$*" >&2
  exit 2
}
# In --root mode (or without systemd) the steps that change the running machine are only described.
would() { printf 'scanbox install: (skipped, would run) %s\n' "$*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root)
      [ $# -ge 2 ] || usage_error "--root needs a directory"
      ROOT=$2
      shift 2
      ;;
    --root=*)
      ROOT=${1#--root=}
      shift
      ;;
    --uninstall) UNINSTALL=1; shift ;;
    --no-enable) ENABLE=0; shift ;;
    --backend) BACKEND=1; shift ;;
    --backend-db)
      [ $# -ge 2 ] || usage_error "--backend-db needs a postgres:// URL"
      BACKEND_DB=$2
      shift 2
      ;;
    --backend-db=*) BACKEND_DB=${1#--backend-db=}; shift ;;
    --scanner-usb)
      [ $# -ge 2 ] || usage_error "--scanner-usb needs VID:PID[:SERIAL]"
      SCANNER_USB=$2
      shift 2
      ;;
    --scanner-usb=*) SCANNER_USB=${1#--scanner-usb=}; shift ;;
    --register-usb)
      [ $# -ge 2 ] || usage_error "--register-usb needs VID:PID[:SERIAL]"
      REGISTER_USB=$2
      shift 2
      ;;
    --register-usb=*) REGISTER_USB=${1#--register-usb=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown option: $1" ;;
  esac
done

# VID:PID[:SERIAL] -> the values of one udev rule; refuses anything that could break the rule's quoting.
parse_usb() {
  local what=$1 spec=$2
  if ! [[ "$spec" =~ ^([0-9A-Fa-f]{4}):([0-9A-Fa-f]{4})(:([A-Za-z0-9._-]+))?$ ]]; then
    usage_error "$what '$spec' is not VID:PID or VID:PID:SERIAL (4 hex digits each, e.g. 0403:6001:A50285BI)"
  fi
}
[ -z "$SCANNER_USB" ] || parse_usb --scanner-usb "$SCANNER_USB"
[ -z "$REGISTER_USB" ] || parse_usb --register-usb "$REGISTER_USB"
if [ "$BACKEND" = 1 ] && { [ -n "$SCANNER_USB" ] || [ -n "$REGISTER_USB" ]; }; then
  usage_error "--scanner-usb and --register-usb are for a box, not for --backend (the backend has no serial devices)"
fi

if [ -n "$BACKEND_DB" ]; then
  [ "$BACKEND" = 1 ] || usage_error "--backend-db is for --backend"
  # The URL is never echoed: a mistaken one may hold a password.
  password_re='^postgres(ql)?://[^/@]*:[^/@]*@|[?&]password='
  if [[ "$BACKEND_DB" =~ $password_re ]]; then
    usage_error "--backend-db: the URL holds a password; put it in /etc/scanbox-backend/dbpassword instead"
  fi
  local_re='^postgres(ql)?://[A-Za-z0-9_.@:,-]+/[A-Za-z_][A-Za-z0-9_-]*([?][A-Za-z0-9_=&.-]*)?$'
  if ! [[ "$BACKEND_DB" =~ $local_re ]]; then
    usage_error "--backend-db: not a PostgreSQL URL (postgres://USER@HOST[:PORT][,HOST[:PORT]...]/DATABASE; an IPv6 host: edit backend.env)"
  fi
fi

if [ -n "$ROOT" ]; then
  mkdir -p -- "$ROOT"
  ROOT=$(cd -- "$ROOT" && pwd -P)
  # --root / is the real machine: treat it as such.
  if [ "$ROOT" = / ]; then ROOT=""; fi
fi
readonly ROOT UNINSTALL ENABLE BACKEND

LIVE=0 # 1: this machine, with users, systemd and udev to talk to
if [ -z "$ROOT" ]; then LIVE=1; fi
readonly LIVE

if [ "$LIVE" = 1 ] && [ "$(id -u)" -ne 0 ]; then
  die "run it as root: sudo $0 (with the same options)"
fi

# systemctl only when PID 1 is systemd (sd_booted(3): /run/systemd/system exists); not in a chroot or a
# container without it.
HAVE_SYSTEMD=0
if [ "$LIVE" = 1 ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  HAVE_SYSTEMD=1
fi
HAVE_UDEV=0
if [ "$LIVE" = 1 ] && command -v udevadm >/dev/null 2>&1; then
  HAVE_UDEV=1
fi
readonly HAVE_SYSTEMD HAVE_UDEV

OPT=$ROOT/opt/scanbox
ETC=$ROOT/etc/scanbox
STATE=$ROOT/var/lib/scanbox
SYSTEMD_DIR=$ROOT/etc/systemd/system
UNIT_FILE=$SYSTEMD_DIR/$UNIT
RULES_FILE=$ROOT/etc/udev/rules.d/99-scanbox.rules
BIN_LINK=$ROOT/usr/local/bin/scanbox
readonly OPT ETC STATE SYSTEMD_DIR UNIT_FILE RULES_FILE BIN_LINK
BACKEND_ETC=$ROOT/etc/scanbox-backend
BACKEND_STATE=$ROOT/var/lib/scanbox-backend
BACKEND_UNIT_FILE=$SYSTEMD_DIR/$BACKEND_UNIT
readonly BACKEND_ETC BACKEND_STATE BACKEND_UNIT_FILE

is_root() { [ "$(id -u)" -eq 0 ]; }
user_exists() { getent passwd "$1" >/dev/null 2>&1; }
group_exists() { getent group "$1" >/dev/null 2>&1; }

# chown only where it means something: as root, and to a user/group this machine knows (in --root mode the
# image's users may not exist here).
own() {
  local owner=$1 group=$2
  shift 2
  is_root || return 0
  user_exists "$owner" || return 0
  group_exists "$group" || return 0
  chown "$owner:$group" "$@"
}

# The box and the backend run the same /opt/scanbox: it goes only with the last of them. 0: removed, 1: kept.
remove_app() {
  local other_unit=$1 other_name=$2
  if [ -e "$other_unit" ]; then
    say "kept /opt/scanbox and /usr/local/bin/scanbox: $other_name ($(basename -- "$other_unit")) on this machine runs them"
    return 1
  fi
  if [ -L "$BIN_LINK" ] && [ "$(readlink -- "$BIN_LINK")" = /opt/scanbox/dist/cli.js ]; then
    rm -f -- "$BIN_LINK"
  fi
  rm -rf -- "$OPT" "$OPT.new" "$OPT.old"
  return 0
}

# ------------------------------------------------------------------------------------------ systemd units

# The box and the backend each have a service and a daily reconciliation (a oneshot service that only its timer
# starts). These functions install, start and remove them the same way for both.

# Writes this version's $SRC/systemd/NAME to /etc/systemd/system/NAME with ExecStart= naming the Node found
# (the templates name /usr/bin/node), and refuses a template whose ExecStart= does not run
# `NODE [--flags] /opt/scanbox/dist/cli.js ARGS`. Overwritten on every update: local changes go in drop-ins.
install_unit() {
  local name=$1 args=$2 file=$SYSTEMD_DIR/$1 tmp
  mkdir -p -- "$SYSTEMD_DIR"
  tmp=$(mktemp "$file.XXXXXX")
  if [ "$NODE" = "$DEFAULT_NODE" ]; then
    cp -- "$SRC/systemd/$name" "$tmp"
  else
    sed "s#^ExecStart=$DEFAULT_NODE #ExecStart=$NODE #" "$SRC/systemd/$name" >"$tmp"
  fi
  grep -q "^ExecStart=$NODE \(--[a-z0-9=-]* \)*/opt/scanbox/dist/cli.js $args\$" "$tmp" || {
    rm -f -- "$tmp"
    die "could not set ExecStart= to $NODE in $name"
  }
  chmod 0644 "$tmp"
  mv -- "$tmp" "$file"
}

# install_units UNIT ARGS RECONCILE_UNIT RECONCILE_ARGS RECONCILE_TIMER: the service, its reconciliation
# service (the same Node) and the reconciliation's timer (copied as it is).
install_units() {
  local unit=$1 args=$2 reconcile=$3 reconcile_args=$4 timer=$5
  install_unit "$unit" "$args"
  install_unit "$reconcile" "$reconcile_args"
  install -m 0644 -- "$SRC/systemd/$timer" "$SYSTEMD_DIR/$timer"
  if [ "$NODE" != "$DEFAULT_NODE" ]; then say "unit: ExecStart uses $NODE (not $DEFAULT_NODE)"; fi
  say "installed /etc/systemd/system/$unit (overwritten on every update: put local changes in 'systemctl edit ${unit%.service}')"
  say "installed /etc/systemd/system/$reconcile and $timer (the daily reconciliation; overwritten on every update too)"
}

# enable_unit UNIT: enabled at boot, unless --no-enable (after systemctl daemon-reload).
enable_unit() {
  if [ "$ENABLE" = 1 ]; then
    systemctl enable --quiet "$1"
    say "enabled $1 (starts at boot)"
  else
    say "not enabled (--no-enable): sudo systemctl enable --now ${1%.service}"
  fi
}

# start_timer TIMER WHAT: the timer, not its service, is enabled and started (the timer starts the service every
# morning). A timer already running is restarted, --no-enable or not: a changed schedule takes effect now, and
# Persistent= keeps the time of the last run across the restart.
start_timer() {
  local timer=$1 what=$2
  if [ "$HAVE_SYSTEMD" = 1 ]; then
    if [ "$ENABLE" = 1 ]; then
      systemctl enable --quiet "$timer"
      say "enabled $timer ($what)"
    else
      say "reconciliation timer not enabled (--no-enable): sudo systemctl enable --now $timer"
    fi
    if systemctl is-active --quiet "$timer"; then
      systemctl restart "$timer"
      say "restarted $timer: this version's schedule applies (systemctl list-timers ${timer%.timer})"
    elif [ "$ENABLE" = 1 ]; then
      systemctl start "$timer"
      say "started $timer (next run: systemctl list-timers ${timer%.timer})"
    fi
  elif [ "$ENABLE" = 1 ]; then
    would "systemctl enable --now $timer; systemctl restart $timer (only if it was running)"
  else
    would "systemctl restart $timer (only if it was running)"
  fi
}

# remove_units UNIT RECONCILE_UNIT RECONCILE_TIMER: stopped, disabled and removed. The timer first, so that it
# cannot start a reconciliation while the units go; then a reconciliation that is running (or waiting to be
# tried again) is stopped: the next install's timer does the day again. Then the service. Drop-ins are local
# changes: kept, and named.
remove_units() {
  local unit=$1 reconcile=$2 timer=$3 d
  if [ "$HAVE_SYSTEMD" = 1 ]; then
    systemctl disable --now --quiet "$timer" || true
    systemctl stop "$reconcile" || true
    say "stopped and disabled $timer, stopped $reconcile"
  else
    would "systemctl disable --now $timer; systemctl stop $reconcile"
  fi
  rm -f -- "$SYSTEMD_DIR/timers.target.wants/$timer" "$SYSTEMD_DIR/$timer" "$SYSTEMD_DIR/$reconcile"
  if [ "$HAVE_SYSTEMD" = 1 ]; then
    systemctl disable --now --quiet "$unit" || true
    say "stopped and disabled $unit"
  else
    would "systemctl disable --now $unit"
  fi
  rm -f -- "$SYSTEMD_DIR/multi-user.target.wants/$unit" "$SYSTEMD_DIR/$unit"
  for d in "$SYSTEMD_DIR/$timer.d" "$SYSTEMD_DIR/$reconcile.d" "$SYSTEMD_DIR/$unit.d"; do
    if [ -d "$d" ]; then
      say "kept the drop-ins in ${d} (your local changes); remove them by hand if unwanted"
    fi
  done
}

# --------------------------------------------------------------------------------------------- uninstall

uninstall() {
  say "removing scanbox${ROOT:+ from $ROOT}"
  # Stopping the daemon lets a sale that is talking to WeChat Pay finish (up to 20 s; the unit allows 40 s).
  remove_units "$UNIT" "$RECONCILE_UNIT" "$RECONCILE_TIMER"
  local app_removed=1
  remove_app "$BACKEND_UNIT_FILE" "the merchant backend" || app_removed=0
  if [ -f "$RULES_FILE" ]; then
    if [ -d "$ETC" ]; then
      # The rules hold the USB ids the technician found: keep a copy with the configuration.
      cp -p -- "$RULES_FILE" "$ETC/99-scanbox.rules.removed"
      say "copied the udev rules to /etc/scanbox/99-scanbox.rules.removed"
    fi
    rm -f -- "$RULES_FILE"
  fi
  if [ "$HAVE_SYSTEMD" = 1 ]; then systemctl daemon-reload; else would "systemctl daemon-reload"; fi
  if [ "$HAVE_UDEV" = 1 ]; then udevadm control --reload || true; elif [ "$LIVE" = 0 ]; then would "udevadm control --reload"; fi
  if [ "$app_removed" = 1 ]; then
    say "removed: /opt/scanbox, /usr/local/bin/scanbox, /etc/systemd/system/$UNIT, /etc/udev/rules.d/99-scanbox.rules"
  else
    say "removed: /etc/systemd/system/$UNIT, /etc/udev/rules.d/99-scanbox.rules"
  fi
  say "removed: /etc/systemd/system/$RECONCILE_UNIT and /etc/systemd/system/$RECONCILE_TIMER (the daily reconciliation)"
  say "KEPT: /var/lib/scanbox (the journal: the record of every sale, money records; keep it as long as the"
  say "      merchant's accounting needs it), /etc/scanbox (configuration, API key and merchant certificate:"
  say "      delete it by hand when the box leaves service), and the user $APP_USER (userdel $APP_USER)"
}

uninstall_backend() {
  say "removing the scanbox merchant backend${ROOT:+ from $ROOT}"
  # Calls in flight are cut; each box treats a cut call as an unknown result (queried, reversed).
  remove_units "$BACKEND_UNIT" "$BACKEND_RECONCILE_UNIT" "$BACKEND_RECONCILE_TIMER"
  local app_removed=1
  remove_app "$UNIT_FILE" "the box" || app_removed=0
  if [ "$HAVE_SYSTEMD" = 1 ]; then systemctl daemon-reload; else would "systemctl daemon-reload"; fi
  if [ "$app_removed" = 1 ]; then
    say "removed: /opt/scanbox, /usr/local/bin/scanbox, /etc/systemd/system/$BACKEND_UNIT"
  else
    say "removed: /etc/systemd/system/$BACKEND_UNIT"
  fi
  say "KEPT: /var/lib/scanbox-backend (the backend's journal of every box's calls, and its CA: without the CA every"
  say "      box must be enrolled again), /etc/scanbox-backend (configuration, API key and merchant certificate:"
  say "      delete it by hand when the backend leaves service), and the user $BACKEND_USER (userdel $BACKEND_USER)"
}

# ------------------------------------------------------------------------------------------- --backend

# The merchant backend, after the application is in /opt/scanbox: configuration, state, unit, summary.
install_backend() {
  mkdir -p -- "$BACKEND_ETC"
  chmod 0750 "$BACKEND_ETC"
  own root "$BACKEND_USER" "$BACKEND_ETC"
  local env_file=$BACKEND_ETC/backend.env
  if [ -e "$env_file" ]; then
    say "kept /etc/scanbox-backend/backend.env (never overwritten; this version's template: /opt/scanbox/systemd/backend.env)"
  else
    install -m 0640 -- "$SRC/systemd/backend.env" "$env_file"
    say "created /etc/scanbox-backend/backend.env from the template: fill in SCANBOX_MCH_ID, SCANBOX_APPID and SCANBOX_BACKEND_HOSTNAMES"
  fi
  if [ -n "$BACKEND_DB" ]; then
    if grep -qxF "SCANBOX_BACKEND_DB=$BACKEND_DB" "$env_file"; then
      say "backend.env already names that database"
    elif grep -qE '^SCANBOX_BACKEND_DB=.' "$env_file"; then
      warn "backend.env names another SCANBOX_BACKEND_DB: left as it is (edit it by hand to move; README \"A chain\")"
    else
      local tmp_env
      tmp_env=$(mktemp "$env_file.XXXXXX")
      awk -v line="SCANBOX_BACKEND_DB=$BACKEND_DB" '/^#?SCANBOX_BACKEND_DB=/ && !done { print line; done = 1; next } { print } END { if (!done) print line }' "$env_file" >"$tmp_env"
      mv -- "$tmp_env" "$env_file"
      say "backend.env: SCANBOX_BACKEND_DB set to the PostgreSQL URL given"
    fi
  fi
  chmod 0640 "$env_file"
  own root "$BACKEND_USER" "$env_file"

  # The PostgreSQL password, as the credential dbpassword (a drop-in: the unit itself must start without it).
  local dropin_dir=$ROOT/etc/systemd/system/$BACKEND_UNIT.d
  local dbpassword_missing=0
  if [ -n "$BACKEND_DB" ] || grep -qE '^SCANBOX_BACKEND_DB=postgres' "$env_file"; then
    if [ -f "$BACKEND_ETC/dbpassword" ]; then
      chmod 0600 "$BACKEND_ETC/dbpassword"
      mkdir -p -- "$dropin_dir"
      printf '[Service]\n# Written by install.sh --backend-db: the PostgreSQL password (never in the URL).\nLoadCredential=dbpassword:/etc/scanbox-backend/dbpassword\n' >"$dropin_dir/dbpassword.conf"
      chmod 0644 "$dropin_dir/dbpassword.conf"
      say "installed $BACKEND_UNIT.d/dbpassword.conf: the password in /etc/scanbox-backend/dbpassword is the credential dbpassword"
    else
      dbpassword_missing=1
    fi
  fi

  local missing=() s
  for s in "${SECRETS[@]}"; do
    if [ -f "$BACKEND_ETC/$s" ]; then
      # systemd (root) reads them for LoadCredential=; nobody else needs to.
      if [ -n "$(find "$BACKEND_ETC/$s" -perm /077 -print -quit)" ]; then
        chmod 0600 "$BACKEND_ETC/$s"
        warn "/etc/scanbox-backend/$s was readable by others: set to mode 0600"
      fi
    else
      missing+=("$s")
    fi
  done
  local filled=0
  if grep -qE '^SCANBOX_MCH_ID=[0-9]' "$env_file" && grep -qE '^SCANBOX_APPID=[A-Za-z0-9_]' "$env_file"; then filled=1; fi

  # The journal's and the CA's directory, the backend user's alone (the CA key signs box certificates). systemd
  # (StateDirectory=) would create it too, but `scanbox backend enroll` may run before the first start.
  mkdir -p -- "$BACKEND_STATE"
  chmod 0700 "$BACKEND_STATE"
  own "$BACKEND_USER" "$BACKEND_USER" "$BACKEND_STATE"

  install_units "$BACKEND_UNIT" backend "$BACKEND_RECONCILE_UNIT" "backend reconcile --days 3" "$BACKEND_RECONCILE_TIMER"
  if [ -e "$UNIT_FILE" ]; then
    say "the box on this machine runs /opt/scanbox too: sudo systemctl restart $UNIT to run this version"
  fi

  # Started only once it can run: the merchant ids filled in and the credentials present (a start without them
  # fails, and Restart=always would try again every 5 s until they come).
  local was_active=0 running=0
  if [ "$HAVE_SYSTEMD" = 1 ]; then
    systemctl daemon-reload
    enable_unit "$BACKEND_UNIT"
    if systemctl is-active --quiet "$BACKEND_UNIT"; then
      was_active=1
      # Calls in flight are cut; each box treats a cut call as an unknown result (queried, reversed).
      if systemctl restart "$BACKEND_UNIT"; then
        running=1
        say "restarted $BACKEND_UNIT: the new version runs now"
      else
        warn "$BACKEND_UNIT did not come back: journalctl -u scanbox-backend -b says why (systemd tries again every 5 s)"
      fi
    elif [ "$ENABLE" = 1 ] && [ ${#missing[@]} -eq 0 ] && [ "$filled" = 1 ]; then
      if systemctl start "$BACKEND_UNIT"; then
        running=1
        say "started $BACKEND_UNIT"
      else
        warn "$BACKEND_UNIT did not start: journalctl -u scanbox-backend -b says why (systemd tries again every 5 s)"
      fi
    elif [ "$ENABLE" = 1 ]; then
      say "not started yet: the merchant ids and credentials are not all in /etc/scanbox-backend (next steps below)"
    fi
  elif [ "$ENABLE" = 1 ]; then
    would "systemctl daemon-reload; systemctl enable $BACKEND_UNIT; systemctl restart $BACKEND_UNIT (only if it was running)"
    would "systemctl start $BACKEND_UNIT (once the merchant ids and credentials are in /etc/scanbox-backend)"
  else
    would "systemctl daemon-reload; systemctl restart $BACKEND_UNIT (only if it was running)"
  fi
  start_timer "$BACKEND_RECONCILE_TIMER" "reconciles the merchant's bill every day after 10:00 China time"

  printf '\nscanbox merchant backend %s is installed%s:\n' "$VERSION" "${ROOT:+ in $ROOT}"
  row() { printf '  %-44s %s\n' "$1" "$2"; }
  row /opt/scanbox "the application (dist/, production node_modules/, docs)"
  row /usr/local/bin/scanbox "the command (-> /opt/scanbox/dist/cli.js)"
  row "/etc/systemd/system/$BACKEND_UNIT" "the backend (hardened; runs as the user $BACKEND_USER, HTTPS on 8443)"
  row /etc/scanbox-backend/backend.env "the configuration (mode 0640, root:$BACKEND_USER)"
  row /var/lib/scanbox-backend "its journal and its CA (mode 0700; kept across updates and --uninstall)"
  if [ -n "$BACKEND_DB" ]; then row "SCANBOX_BACKEND_DB" "a PostgreSQL database (the journal; the CA stays in /var/lib/scanbox-backend)"; fi
  printf '\nNext steps (README.md, "Merchant-backend mode", has the details):\n'
  local n=1
  step() {
    printf '  %d. %s\n' "$n" "$1"
    shift
    local more
    for more in "$@"; do printf '     %s\n' "$more"; done
    n=$((n + 1))
  }
  step "Fill in /etc/scanbox-backend/backend.env: SCANBOX_MCH_ID, SCANBOX_APPID, and SCANBOX_BACKEND_HOSTNAMES" \
    "(the names or addresses the boxes reach this server by; they go into its server certificate)."
  if [ ${#missing[@]} -gt 0 ]; then
    step "Put the merchant's secret files in /etc/scanbox-backend, owned by root, mode 0600 (missing now: ${missing[*]}):" \
      "sudo install -m 0600 -o root -g root apikey apiclient_cert.pem apiclient_key.pem /etc/scanbox-backend/" \
      "(apikey: the 32-character API key; the certificate pair from the merchant platform's API security page)"
  fi
  if [ "$dbpassword_missing" = 1 ]; then
    step "Put the PostgreSQL password in /etc/scanbox-backend/dbpassword (root, mode 0600; one line) and run" \
      "this installer again with the same options: it loads the file as the credential dbpassword" \
      "(or leave it out where the database trusts this machine by other means)."
  fi
  if [ "$running" = 1 ] && [ "$was_active" = 1 ]; then
    step "sudo systemctl restart scanbox-backend   after changing the configuration"
  elif [ "$running" = 1 ]; then
    step "sudo systemctl restart scanbox-backend   after changing the configuration (it made its CA at this first start)"
  else
    step "sudo systemctl start scanbox-backend     it makes its CA and server certificate at the first start"
  fi
  step "journalctl -u scanbox-backend -f         the backend's log: 'backend listening' with its names, then every call"
  step "For each box, as the backend's user (the journal and the CA are that user's):" \
    "sudo -u $BACKEND_USER scanbox backend enroll DEVICE_ID --out /var/lib/scanbox-backend/enrolled/DEVICE_ID" \
    "(DEVICE_ID: the box's SCANBOX_DEVICE_ID; --max-amount FEN and --refunds on|off give it its own policy)"
  step "Copy backend_cert.pem, backend_key.pem and backend_ca.pem from that directory to the box's /etc/scanbox/" \
    "(root, mode 0600), then delete them here. On the box set SCANBOX_BACKEND=https://NAME:8443 in" \
    "/etc/scanbox/scanbox.env, remove apikey and apiclient_*.pem from /etc/scanbox, and load the three files with" \
    "'sudo systemctl edit scanbox' and 'sudo systemctl edit scanbox-reconcile' (the lines: a comment in scanbox.service)."
  step "sudo -u $BACKEND_USER scanbox backend status          the boxes: last seen, calls, errors" \
    "sudo -u $BACKEND_USER scanbox backend revoke DEVICE_ID  cuts a box off at once (a lost or stolen box)"
}

if [ "$UNINSTALL" = 1 ]; then
  if [ "$BACKEND" = 1 ]; then uninstall_backend; else uninstall; fi
  exit 0
fi

# ------------------------------------------------------------------------------------------------ checks

[ -f "$SRC/dist/cli.js" ] || die "$SRC/dist/cli.js is missing: run 'npm ci' (or 'npm install') in $SRC first, it builds dist/"
[ -f "$SRC/package.json" ] || die "$SRC/package.json is missing: run this from a scanbox checkout or release"
if [ "$BACKEND" = 1 ]; then
  for f in "systemd/$BACKEND_UNIT" "systemd/$BACKEND_RECONCILE_UNIT" "systemd/$BACKEND_RECONCILE_TIMER" systemd/backend.env; do
    [ -f "$SRC/$f" ] || die "$SRC/$f is missing: an incomplete checkout or release"
  done
else
  for f in systemd/scanbox.service "systemd/$RECONCILE_UNIT" "systemd/$RECONCILE_TIMER" systemd/scanbox.env systemd/99-scanbox.rules; do
    [ -f "$SRC/$f" ] || die "$SRC/$f is missing: an incomplete checkout or release"
  done
fi
if [ -d "$SRC/src" ] && [ -n "$(find "$SRC/src" -name '*.ts' -newer "$SRC/dist/cli.js" -print -quit 2>/dev/null)" ]; then
  warn "some files in src/ are newer than dist/: if you changed the code, run 'npm run build' first"
fi

NODE=$(command -v node 2>/dev/null || true)
[ -n "$NODE" ] || die "node is not installed (or not on root's PATH). Install Node.js 20 or newer, e.g. 'sudo apt install nodejs' on Debian 13 / Raspberry Pi OS Trixie, or from NodeSource on Bookworm"
if ! "$NODE" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  die "$NODE is Node.js $("$NODE" --version); scanbox needs Node.js 20 or newer"
fi
case "$NODE" in
  /*) ;;
  *) die "node resolves to '$NODE', not an absolute path" ;;
esac
# The unit runs with ProtectHome= and PrivateTmp=: a Node under a home directory (nvm) or /tmp is invisible
# to the service. systemd also needs the full path in ExecStart=.
NODE_REAL=$(readlink -f -- "$NODE")
for p in "$NODE" "$NODE_REAL"; do
  case "$p" in
    /home/* | /root/* | /run/user/* | /tmp/* | /var/tmp/*)
      die "node is $p (a per-user or temporary install such as nvm): the service cannot see it. Install Node.js system-wide (/usr/bin/node or /usr/local/bin/node)"
      ;;
  esac
done
[[ "$NODE" =~ ^/[A-Za-z0-9._/+-]+$ ]] || die "node path '$NODE' has characters the unit file cannot hold"

if [ -r /etc/os-release ] && grep -qiE '^(ID|ID_LIKE)=.*debian' /etc/os-release; then
  :
elif [ -r /etc/debian_version ]; then
  :
else
  warn "this is not a Debian-like system (Raspberry Pi OS, Debian, Ubuntu): users, groups and udev may differ"
fi

VERSION=$("$NODE" -e 'process.stdout.write(String(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).version))' "$SRC/package.json")
if [ "$BACKEND" = 1 ]; then
  say "installing the scanbox merchant backend $VERSION from $SRC${ROOT:+ into $ROOT} (node: $NODE, $("$NODE" --version))"
else
  say "installing scanbox $VERSION from $SRC${ROOT:+ into $ROOT} (node: $NODE, $("$NODE" --version))"
fi

# ------------------------------------------------------------------------------------------------- user

if [ "$BACKEND" = 1 ]; then
  # No serial or GPIO group: the backend opens no device.
  if [ "$LIVE" = 1 ]; then
    if ! user_exists "$BACKEND_USER"; then
      # No home of its own: /var/lib/scanbox-backend is made below (and by systemd, StateDirectory=). No login.
      useradd --system --user-group --home-dir /var/lib/scanbox-backend --no-create-home \
        --shell /usr/sbin/nologin --comment "scanbox merchant backend" "$BACKEND_USER"
      say "created the system user $BACKEND_USER"
    fi
  else
    would "useradd --system --user-group --home-dir /var/lib/scanbox-backend --no-create-home --shell /usr/sbin/nologin $BACKEND_USER"
  fi
elif [ "$LIVE" = 1 ]; then
  # On a Raspberry Pi the gpio group exists (Raspberry Pi OS's udev rules give it /sys/class/gpio); elsewhere
  # it is created so that the unit's SupplementaryGroups= resolves. audio: udev gives /dev/snd/* root:audio 0660
  # (the speaker, contract §9).
  for g in dialout gpio audio; do
    if ! group_exists "$g"; then
      groupadd --system "$g"
      say "created the group $g"
    fi
  done
  if ! user_exists "$APP_USER"; then
    # No home of its own: systemd creates /var/lib/scanbox (StateDirectory=). No login.
    useradd --system --user-group --home-dir /var/lib/scanbox --no-create-home \
      --shell /usr/sbin/nologin --comment "scanbox payment box daemon" "$APP_USER"
    say "created the system user $APP_USER"
  fi
  usermod --append --groups dialout,gpio,audio "$APP_USER"
else
  would "groupadd --system gpio (if missing); useradd --system --user-group --home-dir /var/lib/scanbox --no-create-home --shell /usr/sbin/nologin $APP_USER; usermod --append --groups dialout,gpio,audio $APP_USER"
fi

# ------------------------------------------------------------------------------------------ the speaker

# The voice (contract §9) plays through aplay (alsa-utils), which Raspberry Pi OS Lite does not always have.
# Without it the box still takes payments, silently, and says why in its log and in selftest: a failed
# download (no network at installation) is a warning, not a failed install.
if [ "$BACKEND" = 0 ]; then
  if [ "$LIVE" = 1 ]; then
    if command -v aplay >/dev/null 2>&1; then
      :
    elif command -v apt-get >/dev/null 2>&1; then
      say "installing alsa-utils (aplay) for the speaker"
      if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends alsa-utils >/dev/null; then
        warn "alsa-utils could not be installed: the box works but stays silent until 'apt-get install alsa-utils' succeeds"
      fi
    else
      warn "no aplay and no apt-get: install alsa-utils (aplay) by hand for the speaker (SCANBOX_AUDIO_DEVICE)"
    fi
  else
    would "apt-get install --no-install-recommends alsa-utils (only if aplay is missing: the speaker plays through it)"
  fi
fi

# ---------------------------------------------------------------------------------------------- the app

STAGE=$OPT.new
rm -rf -- "$STAGE"
mkdir -p -- "$STAGE"
# A failed or interrupted install leaves the running version as it was, and no half-built copy.
trap 'rm -rf -- "$STAGE"' EXIT
# The voice's clips live beside their code (src/devices/voice/clips) and are the only part of src/ a box keeps.
for item in dist src/devices/voice/clips package.json package-lock.json systemd scripts README.md hardware.md; do
  if [ -e "$SRC/$item" ]; then
    mkdir -p -- "$STAGE/$(dirname -- "$item")"
    cp -R -- "$SRC/$item" "$STAGE/$item"
  elif [ "$item" = package-lock.json ]; then
    warn "$SRC/package-lock.json is missing: dependency versions are not pinned"
  fi
done
chmod 0755 "$STAGE/dist/cli.js"

# Production dependencies. The checkout's node_modules already holds native modules built for this machine
# (better-sqlite3 compiles from source for ~80 s): copy it and prune the dev dependencies offline. Without
# it, fetch them (needs the network and, for better-sqlite3, python3, make and g++).
sqlite_loads() {
  (cd -- "$1" && "$NODE" -e 'const D = require("better-sqlite3"); new D(":memory:").close()') >/dev/null 2>&1
}
if [ -f "$SRC/node_modules/better-sqlite3/build/Release/better_sqlite3.node" ]; then
  say "copying node_modules from $SRC and pruning dev dependencies (offline)"
  cp -R -- "$SRC/node_modules" "$STAGE/"
  (cd -- "$STAGE" && npm prune --omit=dev --offline --no-audit --no-fund --loglevel=error >/dev/null)
  # npm leaves the emptied scope directories (@types, @tapjs, ...) behind.
  find "$STAGE/node_modules" -mindepth 1 -maxdepth 1 -type d -empty -delete
fi
if [ ! -d "$STAGE/node_modules" ] || ! sqlite_loads "$STAGE"; then
  say "installing production dependencies with npm ci --omit=dev (network needed)"
  rm -rf -- "$STAGE/node_modules"
  # `prepare` builds dist/ with TypeScript, a dev dependency that --omit=dev leaves out; dist/ is already built.
  (cd -- "$STAGE" && npm pkg delete scripts.prepare && npm ci --omit=dev --no-audit --no-fund --loglevel=error) ||
    die "npm ci --omit=dev failed (see above); nothing was changed in /opt/scanbox"
  sqlite_loads "$STAGE" || die "better-sqlite3 does not load with $NODE after npm ci; nothing was changed in /opt/scanbox"
fi

# The daemon must not be able to change its own code: everything root-owned, read-only for the rest.
if is_root; then chown -R root:root "$STAGE"; fi
chmod -R u+rwX,go+rX,go-w "$STAGE"

# Replace the running version in two renames: a running daemon keeps the code it loaded until the restart
# below, and never sees a half-copied tree.
if [ -d "$OPT" ]; then
  rm -rf -- "$OPT.old"
  mv -- "$OPT" "$OPT.old"
fi
mv -- "$STAGE" "$OPT"
trap - EXIT
rm -rf -- "$OPT.old"
say "installed the application in /opt/scanbox"

mkdir -p -- "$(dirname -- "$BIN_LINK")"
ln -sfn /opt/scanbox/dist/cli.js "$BIN_LINK"

if [ "$BACKEND" = 1 ]; then
  install_backend
  exit 0
fi
if [ -e "$BACKEND_UNIT_FILE" ]; then
  say "the merchant backend on this machine runs /opt/scanbox too: sudo systemctl restart $BACKEND_UNIT to run this version"
fi

# ------------------------------------------------------------------------------------ configuration

mkdir -p -- "$ETC"
chmod 0750 "$ETC"
own root "$APP_USER" "$ETC"
ENV_FILE=$ETC/scanbox.env
if [ -e "$ENV_FILE" ]; then
  say "kept /etc/scanbox/scanbox.env (never overwritten; this version's template: /opt/scanbox/systemd/scanbox.env)"
else
  install -m 0640 -- "$SRC/systemd/scanbox.env" "$ENV_FILE"
  say "created /etc/scanbox/scanbox.env from the template: fill in SCANBOX_MCH_ID and SCANBOX_APPID"
fi
chmod 0640 "$ENV_FILE"
own root "$APP_USER" "$ENV_FILE"

# A box in merchant-backend mode (SCANBOX_BACKEND set) holds the three files `scanbox backend enroll` made for it
# instead of the merchant's secrets, which must not be on it.
BOX_SECRETS=("${SECRETS[@]}")
if grep -qE '^SCANBOX_BACKEND=.' "$ENV_FILE"; then
  BOX_SECRETS=(backend_cert.pem backend_key.pem backend_ca.pem)
  for s in "${SECRETS[@]}"; do
    if [ -e "$ETC/$s" ]; then
      warn "/etc/scanbox/$s is on a box in backend mode (SCANBOX_BACKEND is set): the merchant's secrets belong on the backend only; delete it"
    fi
  done
fi
MISSING_SECRETS=()
for s in "${BOX_SECRETS[@]}"; do
  if [ -f "$ETC/$s" ]; then
    # systemd (root) reads them for LoadCredential=; nobody else needs to.
    if [ -n "$(find "$ETC/$s" -perm /077 -print -quit)" ]; then
      chmod 0600 "$ETC/$s"
      warn "/etc/scanbox/$s was readable by others: set to mode 0600"
    fi
  else
    MISSING_SECRETS+=("$s")
  fi
done

# The journal's directory; systemd (StateDirectory=) would create it too, but technician commands run
# before the first start look for it.
mkdir -p -- "$STATE"
chmod 0750 "$STATE"
own "$APP_USER" "$APP_USER" "$STATE"

# ----------------------------------------------------------------------------------------------- udev

# Replaces the line naming /dev/NAME (commented example or earlier rule) with one for VID:PID[:SERIAL].
set_usb_rule() {
  local name=$1 spec=$2 vid pid serial line tmp
  IFS=: read -r vid pid serial <<<"$spec"
  vid=${vid,,}
  pid=${pid,,}
  line="SUBSYSTEM==\"tty\", ATTRS{idVendor}==\"$vid\", ATTRS{idProduct}==\"$pid\","
  [ -z "$serial" ] || line="$line ATTRS{serial}==\"$serial\","
  line="$line SYMLINK+=\"$name\", GROUP=\"dialout\", MODE=\"0660\", ENV{ID_MM_DEVICE_IGNORE}=\"1\""
  tmp=$(mktemp "$RULES_FILE.XXXXXX")
  if grep -q "SYMLINK+=\"$name\"" "$RULES_FILE"; then
    # Only the first such line becomes the rule; further ones (stale copies) are dropped.
    awk -v name="SYMLINK+=\"$name\"" -v rule="$line" '
      index($0, name) { if (!done) { print rule; done = 1 } ; next }
      { print }' "$RULES_FILE" >"$tmp"
  else
    # No line for it any more: add it before the end label.
    awk -v rule="$line" '/^LABEL="scanbox_end"/ && !done { print rule; print ""; done = 1 } { print } END { if (!done) print rule }' "$RULES_FILE" >"$tmp"
  fi
  chmod 0644 "$tmp"
  mv -- "$tmp" "$RULES_FILE"
  say "udev: /dev/$name = USB $vid:$pid${serial:+ serial $serial}"
}

mkdir -p -- "$(dirname -- "$RULES_FILE")"
if [ -e "$RULES_FILE" ]; then
  say "kept /etc/udev/rules.d/99-scanbox.rules (this version's template: /opt/scanbox/systemd/99-scanbox.rules)"
else
  install -m 0644 -- "$SRC/systemd/99-scanbox.rules" "$RULES_FILE"
  say "created /etc/udev/rules.d/99-scanbox.rules from the template"
fi
[ -z "$SCANNER_USB" ] || set_usb_rule scanbox-scanner "$SCANNER_USB"
[ -z "$REGISTER_USB" ] || set_usb_rule scanbox-register "$REGISTER_USB"
RULES_TODO=()
grep -qE '^[^#]*SYMLINK\+="scanbox-scanner"' "$RULES_FILE" || RULES_TODO+=(scanner)
grep -qE '^[^#]*SYMLINK\+="scanbox-register"' "$RULES_FILE" || RULES_TODO+=(register)

if [ "$HAVE_UDEV" = 1 ]; then
  udevadm control --reload
  udevadm trigger --subsystem-match=tty --action=change
elif [ "$LIVE" = 1 ]; then
  warn "udevadm not found: the udev rules take effect at the next boot"
else
  would "udevadm control --reload; udevadm trigger --subsystem-match=tty --action=change"
fi

# -------------------------------------------------------------------------------------------- systemd

install_units "$UNIT" run "$RECONCILE_UNIT" reconcile "$RECONCILE_TIMER"

# The box starts before NTP answers and refuses WeChat Pay calls until the clock is synchronised, so an NTP
# client must run. systemd-time-wait-sync.service is deliberately NOT enabled: it would hold time-sync.target
# until NTP answers, with no time limit, and anything ordered after that target with it.
if [ "$HAVE_SYSTEMD" = 1 ]; then
  if ! systemctl is-enabled --quiet systemd-timesyncd.service 2>/dev/null &&
    ! systemctl is-enabled --quiet chrony.service 2>/dev/null &&
    ! systemctl is-enabled --quiet ntpsec.service 2>/dev/null &&
    ! systemctl is-enabled --quiet ntp.service 2>/dev/null; then
    warn "no NTP client is enabled (systemd-timesyncd, chrony, ntpsec): the box stays OFFLINE after every boot until the clock is set. Fix: sudo apt install systemd-timesyncd"
  fi
fi

WAS_ACTIVE=0
if [ "$HAVE_SYSTEMD" = 1 ]; then
  systemctl daemon-reload
  enable_unit "$UNIT"
  if systemctl is-active --quiet "$UNIT"; then
    WAS_ACTIVE=1
    # An open sale gets its 20 s to finish (SIGTERM), and the new version recovers whatever is left.
    systemctl restart "$UNIT"
    say "restarted $UNIT: the new version runs now"
  fi
elif [ "$ENABLE" = 1 ]; then
  would "systemctl daemon-reload; systemctl enable $UNIT; systemctl restart $UNIT (only if it was running)"
else
  would "systemctl daemon-reload; systemctl restart $UNIT (only if it was running)"
fi
start_timer "$RECONCILE_TIMER" "reconciles with WeChat Pay's bill every day after 10:00 China time"

# -------------------------------------------------------------------------------------------- summary

printf '\nscanbox %s is installed%s:\n' "$VERSION" "${ROOT:+ in $ROOT}"
row() { printf '  %-42s %s\n' "$1" "$2"; }
row /opt/scanbox "the application (dist/, production node_modules/, docs)"
row /usr/local/bin/scanbox "the command (-> /opt/scanbox/dist/cli.js)"
row "/etc/systemd/system/$UNIT" "the service (hardened; runs as the user $APP_USER)"
row "/etc/systemd/system/$RECONCILE_TIMER" "the daily reconciliation with WeChat Pay's bill, after 10:00 China time"
row /etc/udev/rules.d/99-scanbox.rules "the names /dev/scanbox-scanner and /dev/scanbox-register"
row /etc/scanbox/scanbox.env "the configuration (mode 0640, root:$APP_USER)"
row /var/lib/scanbox "the journal (kept across updates and --uninstall)"
printf '\nNext steps (hardware.md has the details):\n'
n=1
step() {
  printf '  %d. %s\n' "$n" "$1"
  shift
  for more in "$@"; do printf '     %s\n' "$more"; done
  n=$((n + 1))
}
step "Fill in /etc/scanbox/scanbox.env: SCANBOX_MCH_ID, SCANBOX_APPID (and SCANBOX_DEVICE_ID if several boxes share one image)."
if [ ${#MISSING_SECRETS[@]} -gt 0 ] && [ "${BOX_SECRETS[0]}" = backend_cert.pem ]; then
  step "Put the box's files from 'scanbox backend enroll' in /etc/scanbox, owned by root, mode 0600 (missing now: ${MISSING_SECRETS[*]})," \
    "and load them with 'sudo systemctl edit scanbox' and 'sudo systemctl edit scanbox-reconcile' (the lines: a comment in the unit)"
elif [ ${#MISSING_SECRETS[@]} -gt 0 ]; then
  step "Put the secret files in /etc/scanbox, owned by root, mode 0600 (missing now: ${MISSING_SECRETS[*]}):" \
    "sudo install -m 0600 -o root -g root apikey apiclient_cert.pem apiclient_key.pem /etc/scanbox/" \
    "(apikey: the 32-character API key; the certificate pair from the merchant platform's API security page)"
fi
if [ ${#RULES_TODO[@]} -gt 0 ]; then
  step "Name the serial devices (${RULES_TODO[*]} not set yet) in /etc/udev/rules.d/99-scanbox.rules, or run again with" \
    "--scanner-usb VID:PID[:SERIAL] --register-usb VID:PID[:SERIAL] (values from: udevadm info -a -n /dev/ttyUSB0)"
fi
step "sudo scanbox config check        every configuration problem at once, secrets masked"
step "sudo scanbox selftest            serial ports, light and buzzer, clock, WeChat Pay reach, certificate, journal"
if [ "$WAS_ACTIVE" = 1 ]; then
  step "sudo systemctl restart scanbox   after changing the configuration"
else
  step "sudo systemctl start scanbox"
fi
step "journalctl -u scanbox -f         the box's log (what it does, and why it does not)"
step "systemctl list-timers scanbox-reconcile   when the next reconciliation runs (its log: journalctl -u scanbox-reconcile)"
