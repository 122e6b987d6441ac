# Stage two of the LVM test VM (see lvm-vm.ts), run by the initramfs's busybox sh from the host's root,
# which is mounted read-only at /h. Makes /h a usable root (the guest's /dev, /proc, /sys, tmpfs on /tmp,
# /run and /var/tmp, the test's shared directory at its own path), configures LVM without udev and the
# network, then serves the command port chrooted into /h: each line "ID BASE64(script)" runs the script
# with bash and is answered "OA-RESULT ID STATUS BASE64(stdout) BASE64(stderr)".
H=/h
arg() { for a in $(cat /proc/cmdline); do case "$a" in "$1"=*) echo "${a#*=}";; esac; done; }
mount -o bind /dev $H/dev
mount -t proc proc $H/proc
mount -t sysfs sys $H/sys
mount -t tmpfs -o mode=1777 tmp $H/tmp
mount -t tmpfs -o mode=755 run $H/run
mount -t tmpfs -o mode=1777 vartmp $H/var/tmp
repo=$(arg oa.repo)
if [ -n "$repo" ]; then
  # A checkout under /tmp or /var/tmp, hidden by the tmpfs above: its own read-only share, at its own path.
  mkdir -p "$H$repo"
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,ro repo "$H$repo" || echo "oa-vm: cannot mount $repo" > /dev/console
fi
work=$(arg oa.work)
if [ -n "$work" ]; then
  mkdir -p "$H$work"
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 work "$H$work" || echo "oa-vm: cannot mount $work" > /dev/console
fi
mkdir -p $H/run/oa-lvm $H/run/lock $H/run/lvm
cat > $H/run/oa-lvm/lvm.conf <<'EOF'
devices { obtain_device_list_from_udev = 0 use_devicesfile = 0 filter = [ "a|^/dev/vd|", "r|.*|" ] }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
global { use_lvmpolld = 0 }
backup { backup = 0 archive = 0 }
EOF
hostname oa-lvm-vm
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
port=
for d in /sys/class/virtio-ports/*; do
  [ "$(cat "$d/name" 2>/dev/null)" = oa.cmd ] && port=/dev/${d##*/}
done
if [ -z "$port" ]; then echo "oa-vm: no oa.cmd port" > /dev/console; poweroff -f; fi
cat > $H/run/oa-loop.sh <<'EOF'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
export LVM_SYSTEM_DIR=/run/oa-lvm LVM_SUPPRESS_FD_WARNINGS=1
cd /
echo OA-READY
while IFS=' ' read -r id script; do
  printf '%s' "$script" | base64 -d > /run/oa-cmd.sh
  bash /run/oa-cmd.sh < /dev/null > /run/oa-out 2> /run/oa-err
  rc=$?
  printf 'OA-RESULT %s %s %s %s\n' "$id" "$rc" "$(base64 -w0 /run/oa-out)" "$(base64 -w0 /run/oa-err)"
done
EOF
# A virtio port opens once: read and write through the same descriptor.
exec chroot $H /bin/bash /run/oa-loop.sh 0<> "$port" 1>&0 2> /dev/console
