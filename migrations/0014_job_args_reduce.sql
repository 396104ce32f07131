CREATE TABLE `job_reduces` (
	`job_id` text PRIMARY KEY NOT NULL,
	`app_id` text,
	`program_sha256` text,
	`program_name` text,
	`args` text NOT NULL,
	`status` text NOT NULL,
	`output_key` text,
	`output_head` text,
	`output_bytes` integer,
	`exit_code` integer,
	`error_code` text,
	`error_message` text,
	`bytes_in` integer,
	`wall_us` integer,
	`finished_at` integer,
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
ALTER TABLE `job_items` ADD `exit_code` integer;--> statement-breakpoint
ALTER TABLE `jobs` ADD `io` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `args` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `ok_exit_codes` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `program_name` text;