CREATE TABLE `job_items` (
	`job_id` text NOT NULL,
	`seq` integer NOT NULL,
	`key` text NOT NULL,
	`status` text NOT NULL,
	`output_key` text,
	`error_code` text,
	`error_message` text,
	`http_status` integer,
	`bytes_in` integer,
	`bytes_out` integer,
	`wall_us` integer,
	`finished_at` integer,
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `job_items_pk` ON `job_items` (`job_id`,`seq`);--> statement-breakpoint
CREATE INDEX `job_items_status_idx` ON `job_items` (`job_id`,`status`,`seq`);--> statement-breakpoint
CREATE TABLE `jobs` (
	`id` text PRIMARY KEY NOT NULL,
	`account_id` text NOT NULL,
	`app_id` text,
	`program_sha256` text,
	`input_bucket` text NOT NULL,
	`input_prefix` text NOT NULL,
	`output_bucket` text NOT NULL,
	`output_prefix` text NOT NULL,
	`concurrency` integer NOT NULL,
	`status` text NOT NULL,
	`total` integer NOT NULL,
	`created_at` integer NOT NULL,
	`finished_at` integer,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `jobs_account_idx` ON `jobs` (`account_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `jobs_status_idx` ON `jobs` (`status`);