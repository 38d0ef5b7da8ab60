-- Chunks are ciphertext: compressing them wastes CPU and never saves a byte.
ALTER TABLE "file_chunks" ALTER COLUMN "data" SET STORAGE EXTERNAL;
