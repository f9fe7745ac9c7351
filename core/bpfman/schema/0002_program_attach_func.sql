-- The kernel function a fentry/fexit program was loaded for: fixed at load
-- time (it is in the program's BTF attach id), so it belongs to the program,
-- not to its links. NULL for every other type.
ALTER TABLE programs ADD COLUMN attach_func TEXT;
