-- A pair's first message makes a direct conversation, its two member rows and
-- the first device cursor of each of its devices; with partners at random
-- nearly every message does. The per-row foreign-key checks of those rows
-- (each an SPI query and a KEY SHARE lock) were about a third of PostgreSQL's
-- time for a new pair (bench/first-contact.ts: 97 -> 60 µs a pair). Their
-- writers name only rows they just read or made: the direct-conversation
-- opener (server/direct-opener.ts) two users it has, in the conversation it
-- makes in the same statement; group changes (server/group-store.ts) users
-- found by name, in the group they make or change in the same transaction; acks
-- (server/cursor-store.ts) a logged-in device, where its user is a member.
-- Nothing in ChatterBox deletes a user, a conversation or a device (a device
-- is revoked, not deleted); the cascades the keys gave, for an operator who
-- does, are kept by these statement-level triggers, as in 0005 and 0006.
ALTER TABLE "device_cursors" DROP CONSTRAINT IF EXISTS "device_cursors_device_id_devices_id_fk";
--> statement-breakpoint
ALTER TABLE "members" DROP CONSTRAINT IF EXISTS "members_conversation_id_conversations_id_fk";
--> statement-breakpoint
ALTER TABLE "members" DROP CONSTRAINT IF EXISTS "members_user_id_users_id_fk";
--> statement-breakpoint
CREATE FUNCTION "members_cascade_users"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM "members" m USING "gone" g WHERE m."user_id" = g."id";
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "users_delete_members" AFTER DELETE ON "users"
  REFERENCING OLD TABLE AS "gone" FOR EACH STATEMENT EXECUTE FUNCTION "members_cascade_users"();
--> statement-breakpoint
CREATE FUNCTION "members_cascade_conversations"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM "members" m USING "gone" g WHERE m."conversation_id" = g."id";
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "conversations_delete_members" AFTER DELETE ON "conversations"
  REFERENCING OLD TABLE AS "gone" FOR EACH STATEMENT EXECUTE FUNCTION "members_cascade_conversations"();
--> statement-breakpoint
CREATE FUNCTION "device_cursors_cascade_devices"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM "device_cursors" d USING "gone" g WHERE d."device_id" = g."id";
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "devices_delete_device_cursors" AFTER DELETE ON "devices"
  REFERENCING OLD TABLE AS "gone" FOR EACH STATEMENT EXECUTE FUNCTION "device_cursors_cascade_devices"();
