#!/bin/sh
# Install (or remove) trapd as a systemd service on a Raspberry Pi.
#   sudo scripts/install.sh             install: user, unit, /etc/trapd/config.yaml, enable
#   sudo scripts/install.sh --uninstall stop and remove the unit (config and images stay)
#   scripts/install.sh --dry-run ...    print what would be done
# PREFIX (default /opt/trapd) is the checkout with its .venv. With DESTDIR set,
# files go below it and the user/systemctl steps are skipped (packaging, tests).
# FLEET=1 also installs the drop-in that lets the fleet uploader reach the network.
# SETUP=1 also installs the setup page's unit (trapd-setup.service, enabled) and the
# drop-in that lets the daemon set the clock from the page (docs/setup.md).
set -eu

PREFIX=${PREFIX:-/opt/trapd}
DESTDIR=${DESTDIR:-}
HERE=$(cd "$(dirname "$0")/.." && pwd)
UNIT=$DESTDIR/etc/systemd/system/trapd.service
CONFIG=$DESTDIR/etc/trapd/config.yaml
DROPIN=$DESTDIR/etc/systemd/system/trapd.service.d/fleet.conf
SETUP_UNIT=$DESTDIR/etc/systemd/system/trapd-setup.service
SETUP_DROPIN=$DESTDIR/etc/systemd/system/trapd.service.d/setup.conf
FLEET=${FLEET:-0}
SETUP=${SETUP:-0}
DRY=0
ACTION=install
for arg in "$@"; do
    case $arg in
        --dry-run) DRY=1 ;;
        --uninstall) ACTION=uninstall ;;
        *) echo "usage: $0 [--dry-run] [--uninstall]" >&2; exit 2 ;;
    esac
done

run() {
    echo "+ $*"
    [ "$DRY" = 1 ] || "$@"
}

on_target() {  # steps that change the running system: not when staging into DESTDIR
    if [ -n "$DESTDIR" ]; then echo "(DESTDIR set, skipped) $*"; else run "$@"; fi
}

install_trapd() {
    if [ -n "$DESTDIR" ] || ! id trapd >/dev/null 2>&1; then
        on_target useradd --system --home-dir /var/lib/trapd --no-create-home \
            --shell /usr/sbin/nologin --groups video,gpio trapd
    fi
    run mkdir -p "$(dirname "$UNIT")" "$(dirname "$CONFIG")"
    if [ "$DRY" = 1 ]; then
        echo "+ write $UNIT (ExecStart=$PREFIX/.venv/bin/trapd)"
    else
        sed "s#/opt/trapd/#$PREFIX/#g" "$HERE/systemd/trapd.service" > "$UNIT"
        chmod 0644 "$UNIT"
    fi
    if [ "$FLEET" = 1 ]; then
        run mkdir -p "$(dirname "$DROPIN")"
        run cp "$HERE/systemd/trapd.service.d/fleet.conf" "$DROPIN"
    fi
    if [ "$SETUP" = 1 ]; then
        run mkdir -p "$(dirname "$SETUP_DROPIN")"
        run cp "$HERE/systemd/trapd.service.d/setup.conf" "$SETUP_DROPIN"
        if [ "$DRY" = 1 ]; then
            echo "+ write $SETUP_UNIT (ExecStart=$PREFIX/.venv/bin/trapd setup-page)"
        else
            sed "s#/opt/trapd/#$PREFIX/#g" "$HERE/systemd/trapd-setup.service" > "$SETUP_UNIT"
            chmod 0644 "$SETUP_UNIT"
        fi
    fi
    if [ -e "$CONFIG" ]; then
        echo "keeping the existing $CONFIG"
    elif [ "$DRY" = 1 ]; then
        echo "+ write $CONFIG (storage.root: /var/lib/trapd, mode 0640)"
    else
        sed 's#^\(  root:\).*#\1 /var/lib/trapd#' "$HERE/config.yaml" > "$CONFIG"
        chmod 0640 "$CONFIG"
    fi
    on_target chgrp trapd "$CONFIG"
    on_target systemctl daemon-reload
    on_target systemctl enable trapd.service
    if [ "$SETUP" = 1 ]; then
        on_target systemctl enable trapd-setup.service
    fi
    echo "installed: edit $CONFIG (station, deployment, location), check it with"
    echo "  $PREFIX/.venv/bin/trapd check-config $CONFIG, then: systemctl start trapd"
}

uninstall_trapd() {
    on_target systemctl disable --now trapd.service
    if [ -e "$SETUP_UNIT" ]; then
        on_target systemctl disable --now trapd-setup.service
    fi
    run rm -f "$UNIT" "$DROPIN" "$SETUP_UNIT" "$SETUP_DROPIN"
    on_target systemctl daemon-reload
    echo "removed the service; kept $CONFIG, the images in /var/lib/trapd and the user trapd"
}

"${ACTION}_trapd"
