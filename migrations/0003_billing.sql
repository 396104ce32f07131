CREATE TABLE `invoice_lines` (
	`id` text PRIMARY KEY NOT NULL,
	`invoice_id` text NOT NULL,
	`position` integer NOT NULL,
	`metric` text NOT NULL,
	`description` text NOT NULL,
	`quantity` text NOT NULL,
	`unit_price_micros` integer NOT NULL,
	`amount` integer NOT NULL,
	`stripe_item_id` text,
	FOREIGN KEY (`invoice_id`) REFERENCES `invoices`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `invoice_lines_invoice_idx` ON `invoice_lines` (`invoice_id`);--> statement-breakpoint
CREATE TABLE `invoices` (
	`id` text PRIMARY KEY NOT NULL,
	`account_id` text NOT NULL,
	`period` text NOT NULL,
	`status` text NOT NULL,
	`currency` text NOT NULL,
	`total` integer NOT NULL,
	`plan_id` text NOT NULL,
	`created_at` integer NOT NULL,
	`stripe_invoice_id` text,
	`sync_status` text NOT NULL,
	`sync_error` text,
	`sync_attempts` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `invoices_account_period_uq` ON `invoices` (`account_id`,`period`);--> statement-breakpoint
CREATE TABLE `price_plans` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`currency` text NOT NULL,
	`request_price_micros` integer NOT NULL,
	`gb_second_price_micros` integer NOT NULL,
	`giga_instruction_price_micros` integer NOT NULL,
	`free_requests` integer NOT NULL,
	`free_gb_seconds` integer NOT NULL,
	`free_giga_instructions` integer NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `price_plans_name_uq` ON `price_plans` (`name`);--> statement-breakpoint
CREATE TABLE `usage_daily` (
	`account_id` text NOT NULL,
	`app_id` text NOT NULL,
	`day` text NOT NULL,
	`requests` integer NOT NULL,
	`errors` integer NOT NULL,
	`mb_ms` integer NOT NULL,
	`wall_us` integer NOT NULL,
	`instructions` integer NOT NULL,
	`bytes_in` integer NOT NULL,
	`bytes_out` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `usage_daily_pk` ON `usage_daily` (`account_id`,`app_id`,`day`);--> statement-breakpoint
ALTER TABLE `accounts` ADD `plan_id` text;--> statement-breakpoint
ALTER TABLE `accounts` ADD `stripe_customer_id` text;