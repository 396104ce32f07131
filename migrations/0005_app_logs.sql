CREATE TABLE `app_logs` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`app_id` text NOT NULL,
	`deployment_id` text NOT NULL,
	`request_id` text,
	`at` integer NOT NULL,
	`line` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `app_logs_app_idx` ON `app_logs` (`app_id`,`id`);--> statement-breakpoint
CREATE INDEX `app_logs_at_idx` ON `app_logs` (`at`);