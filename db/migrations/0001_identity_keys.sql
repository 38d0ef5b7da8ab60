ALTER TABLE "users" ADD COLUMN "salt" "bytea";--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "kdf" text;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "dh_public" "bytea";--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "sign_public" "bytea";--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "key_backup" "bytea";