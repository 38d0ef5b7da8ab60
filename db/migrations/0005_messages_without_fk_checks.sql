-- The per-row foreign-key checks on messages were half of PostgreSQL's time
-- per stored message. The one writer (server/append.ts) stores a message only
-- under its conversation's row lock, for a logged-in sender; the cascades the
-- keys gave are kept by these statement-level triggers.
ALTER TABLE "messages" DROP CONSTRAINT IF EXISTS "messages_conversation_id_conversations_id_fk";
--> statement-breakpoint
ALTER TABLE "messages" DROP CONSTRAINT IF EXISTS "messages_sender_id_users_id_fk";
--> statement-breakpoint
CREATE FUNCTION "messages_cascade_users"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM "messages" m USING "gone" g WHERE m."sender_id" = g."id";
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "users_delete_messages" AFTER DELETE ON "users"
  REFERENCING OLD TABLE AS "gone" FOR EACH STATEMENT EXECUTE FUNCTION "messages_cascade_users"();
--> statement-breakpoint
CREATE FUNCTION "messages_cascade_conversations"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM "messages" m USING "gone" g WHERE m."conversation_id" = g."id";
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "conversations_delete_messages" AFTER DELETE ON "conversations"
  REFERENCING OLD TABLE AS "gone" FOR EACH STATEMENT EXECUTE FUNCTION "messages_cascade_conversations"();
