CREATE TABLE "key_packages" (
	"id" serial PRIMARY KEY NOT NULL,
	"device_id" integer NOT NULL,
	"data" "bytea" NOT NULL,
	"last_resort" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "key_packages" ADD CONSTRAINT "key_packages_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "key_packages_device" ON "key_packages" USING btree ("device_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "key_packages_last_resort" ON "key_packages" USING btree ("device_id") WHERE last_resort;