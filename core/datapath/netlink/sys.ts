// Socket-level numbers every netlink client here needs (linux/socket.h, linux/netlink.h, asm-generic/errno.h, the
// x86-64/arm64 values): one list, so the rtnetlink, nfnetlink, NFLOG and notification sockets cannot disagree.
export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const NETLINK_ROUTE = 0;
export const SOL_SOCKET = 1;
export const SO_RCVBUF = 8;
export const SO_RCVTIMEO = 20;
export const SOL_NETLINK = 270;
export const NETLINK_CAP_ACK = 10;
export const NETLINK_EXT_ACK = 11;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;
export const NLMSG_HDRLEN = 16;
export const EINTR = 4;
export const EAGAIN = 11;
export const ENOBUFS = 105;
