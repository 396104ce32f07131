CREATE TABLE `accounts` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `accounts_name_uq` ON `accounts` (`name`);--> statement-breakpoint
CREATE TABLE `api_tokens` (
	`id` text PRIMARY KEY NOT NULL,
	`account_id` text,
	`token_hash` text NOT NULL,
	`prefix` text NOT NULL,
	`scopes` text NOT NULL,
	`created_at` integer NOT NULL,
	`revoked_at` integer,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_tokens_hash_uq` ON `api_tokens` (`token_hash`);--> statement-breakpoint
CREATE TABLE `apps` (
	`id` text PRIMARY KEY NOT NULL,
	`account_id` text NOT NULL,
	`name` text NOT NULL,
	`active_deployment_id` text,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `apps_name_uq` ON `apps` (`name`);--> statement-breakpoint
CREATE TABLE `deployments` (
	`id` text PRIMARY KEY NOT NULL,
	`app_id` text NOT NULL,
	`version` integer NOT NULL,
	`runtime` text NOT NULL,
	`bundle_sha256` text NOT NULL,
	`bundle_bytes` integer NOT NULL,
	`manifest` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`app_id`) REFERENCES `apps`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `deployments_app_version_uq` ON `deployments` (`app_id`,`version`);--> statement-breakpoint
CREATE TABLE `routes` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`deployment_id` text NOT NULL,
	`host` text NOT NULL,
	`path` text NOT NULL,
	`canonical_path` text NOT NULL,
	`mode` text NOT NULL,
	`key_param` text,
	`position` integer NOT NULL,
	FOREIGN KEY (`deployment_id`) REFERENCES `deployments`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `routes_deployment_idx` ON `routes` (`deployment_id`);--> statement-breakpoint
CREATE INDEX `routes_host_path_idx` ON `routes` (`host`,`canonical_path`);--> statement-breakpoint
CREATE TABLE `usage_records` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`request_id` text NOT NULL,
	`account_id` text NOT NULL,
	`app_id` text NOT NULL,
	`deployment_id` text NOT NULL,
	`route_key` text,
	`started_at` integer NOT NULL,
	`wall_us` integer NOT NULL,
	`cpu_us` integer,
	`instructions` integer,
	`memory_mb` integer NOT NULL,
	`status` integer NOT NULL,
	`bytes_in` integer NOT NULL,
	`bytes_out` integer NOT NULL,
	`mode` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `usage_request_uq` ON `usage_records` (`request_id`);--> statement-breakpoint
CREATE INDEX `usage_account_time_idx` ON `usage_records` (`account_id`,`started_at`);