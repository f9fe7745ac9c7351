-- XDP: the driver mode (native, generic, offload) the kernel attached a
-- chain in, as netlink reported it at the last rebuild; NULL for other types
-- and for chains built before this column existed (until their next rebuild).
ALTER TABLE dispatchers ADD COLUMN attach_mode TEXT;
