CREATE TABLE "connections" (
	"server_id" text NOT NULL,
	"conn_id" integer NOT NULL,
	"user_id" integer NOT NULL,
	"device_id" integer NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "connections_server_id_conn_id_pk" PRIMARY KEY("server_id","conn_id")
);
--> statement-breakpoint
CREATE TABLE "device_cursors" (
	"device_id" integer NOT NULL,
	"conversation_id" integer NOT NULL,
	"seq" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "device_cursors_device_id_conversation_id_pk" PRIMARY KEY("device_id","conversation_id")
);
--> statement-breakpoint
CREATE TABLE "devices" (
	"id" serial PRIMARY KEY NOT NULL,
	"user_id" integer NOT NULL,
	"key" text NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_seen_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "tokens" (
	"hash" "bytea" PRIMARY KEY NOT NULL,
	"user_id" integer NOT NULL,
	"device_id" integer NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
DROP TABLE "sessions" CASCADE;--> statement-breakpoint
ALTER TABLE "members" RENAME COLUMN "cursor" TO "read_seq";--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "read_receipts" boolean DEFAULT true NOT NULL;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "pins" "bytea";--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "pins_version" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "connections" ADD CONSTRAINT "connections_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "connections" ADD CONSTRAINT "connections_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "device_cursors" ADD CONSTRAINT "device_cursors_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "devices" ADD CONSTRAINT "devices_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tokens" ADD CONSTRAINT "tokens_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tokens" ADD CONSTRAINT "tokens_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "connections_user" ON "connections" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "connections_device" ON "connections" USING btree ("device_id");--> statement-breakpoint
CREATE UNIQUE INDEX "devices_user_key" ON "devices" USING btree ("user_id","key");--> statement-breakpoint
CREATE INDEX "tokens_device" ON "tokens" USING btree ("device_id");--> statement-breakpoint
-- Cursors and read markers are updated in place all the time: room on each page keeps those updates HOT.
ALTER TABLE "device_cursors" SET (fillfactor = 70);--> statement-breakpoint
ALTER TABLE "members" SET (fillfactor = 80);
--> statement-breakpoint
-- No foreign key from device_cursors to conversations: its check takes a KEY
-- SHARE lock on each conversation an ack names, in the ack's order, and the
-- group commit locks conversations FOR UPDATE in id order, so the two
-- deadlocked under load. Acks name only conversations the user is a member of
-- (checked in the statement); the cascade the key gave is this trigger.
CREATE FUNCTION "device_cursors_cascade_conversations"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM "device_cursors" d USING "gone" g WHERE d."conversation_id" = g."id";
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "conversations_delete_device_cursors" AFTER DELETE ON "conversations"
  REFERENCING OLD TABLE AS "gone" FOR EACH STATEMENT EXECUTE FUNCTION "device_cursors_cascade_conversations"();
