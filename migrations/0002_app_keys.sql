CREATE TABLE `app_keys` (
	`app_id` text NOT NULL,
	`key` text NOT NULL,
	`bytes` integer NOT NULL,
	`version` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`last_access_at` integer NOT NULL,
	FOREIGN KEY (`app_id`) REFERENCES `apps`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `app_keys_pk` ON `app_keys` (`app_id`,`key`);