#!/usr/bin/env bash
# The tools the integration tests and `make soak` drive: Debian's Chromium, dcmtk's DICOM
# peers, Orthanc, gettext, libfaketime and CJK fonts. Installs what is missing with apt (only
# as root); talks on stderr.
set -euo pipefail
say() { echo "[tools] $*" >&2; }
die() { echo "[tools] error: $*" >&2; exit 1; }
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
# dcmtk's own binaries: pynetdicom installs Python apps of the same names into the venv.
[ -x /usr/bin/storescu ] && [ -x /usr/bin/findscu ] || missing+=(dcmtk)
# Orthanc 1.10 with its DICOMweb plugin: a hospital PACS reading the hub with a connected
# system's credential (tests/test_connected_system_peers.py).
[ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
command -v xgettext >/dev/null || missing+=(gettext)
# libfaketime: the deadline-escalation test runs worker and beat with the clock moved on.
command -v faketime >/dev/null || missing+=(faketime)
# CJK fonts, so Chromium draws Chinese pages (screenshots, layout checks) as a person sees them.
[ -d /usr/share/fonts/opentype/noto ] || missing+=(fonts-noto-cjk)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]} with apt"
  can_apt || die "missing ${missing[*]} and cannot install them here (needs root and apt)."
  apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
    || die "could not install ${missing[*]} with apt."
fi
