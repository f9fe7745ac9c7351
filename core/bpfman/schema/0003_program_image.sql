-- The bytecode image a program was loaded from, pinned to the verified
-- digest (REGISTRY/REPO[:TAG]@sha256:...); `path` then names the object
-- extracted from the image cache. NULL for programs loaded from a file.
-- Never holds registry credentials.
ALTER TABLE programs ADD COLUMN image TEXT;
