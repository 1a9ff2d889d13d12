from fleetkey.cli.main import main

main()
