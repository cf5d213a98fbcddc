from packager.cli import main

# Guarded: a spawned step worker imports this module under another name and must not run the CLI.
if __name__ == "__main__":
    main()
