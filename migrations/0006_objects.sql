CREATE TABLE `access_keys` (
	`id` text PRIMARY KEY NOT NULL,
	`account_id` text NOT NULL,
	`secret_enc` text NOT NULL,
	`scopes` text NOT NULL,
	`created_at` integer NOT NULL,
	`revoked_at` integer,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `access_keys_account_idx` ON `access_keys` (`account_id`);--> statement-breakpoint
CREATE TABLE `bucket_bindings` (
	`id` text PRIMARY KEY NOT NULL,
	`bucket_id` text NOT NULL,
	`prefix` text NOT NULL,
	`app_id` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`bucket_id`) REFERENCES `buckets`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`app_id`) REFERENCES `apps`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `bucket_bindings_bucket_prefix_uq` ON `bucket_bindings` (`bucket_id`,`prefix`);--> statement-breakpoint
CREATE TABLE `buckets` (
	`id` text PRIMARY KEY NOT NULL,
	`account_id` text NOT NULL,
	`name` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `buckets_account_name_uq` ON `buckets` (`account_id`,`name`);--> statement-breakpoint
CREATE TABLE `object_upload_parts` (
	`upload_id` text NOT NULL,
	`part_number` integer NOT NULL,
	`size` integer NOT NULL,
	`etag` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`upload_id`) REFERENCES `object_uploads`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `object_upload_parts_pk` ON `object_upload_parts` (`upload_id`,`part_number`);--> statement-breakpoint
CREATE TABLE `object_uploads` (
	`id` text PRIMARY KEY NOT NULL,
	`bucket_id` text NOT NULL,
	`key` text NOT NULL,
	`content_type` text NOT NULL,
	`metadata` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`bucket_id`) REFERENCES `buckets`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `object_uploads_bucket_idx` ON `object_uploads` (`bucket_id`);--> statement-breakpoint
CREATE TABLE `objects` (
	`bucket_id` text NOT NULL,
	`key` text NOT NULL,
	`sha256` text NOT NULL,
	`size` integer NOT NULL,
	`etag` text NOT NULL,
	`content_type` text NOT NULL,
	`metadata` text NOT NULL,
	`last_modified` integer NOT NULL,
	FOREIGN KEY (`bucket_id`) REFERENCES `buckets`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `objects_bucket_key_uq` ON `objects` (`bucket_id`,`key`);--> statement-breakpoint
CREATE INDEX `objects_sha256_idx` ON `objects` (`sha256`);