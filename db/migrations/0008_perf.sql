-- Room on each page for the new version of an updated row, so that the hot
-- updates stay HOT (no index insertions, pruned in place): a conversation's
-- last_seq moves with every batch that stores in it, a device's cursor with
-- every acknowledgement, a member's read marker with every read. None of
-- these columns is indexed. New pages only: a table already full gets the room
-- as its pages are rewritten (VACUUM FULL, or as rows are updated and pruned).
ALTER TABLE "conversations" SET (fillfactor = 80);--> statement-breakpoint
ALTER TABLE "device_cursors" SET (fillfactor = 80);--> statement-breakpoint
ALTER TABLE "members" SET (fillfactor = 80);
