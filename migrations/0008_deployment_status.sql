ALTER TABLE `deployments` ADD `status` text DEFAULT 'ready' NOT NULL;--> statement-breakpoint
ALTER TABLE `deployments` ADD `error` text;