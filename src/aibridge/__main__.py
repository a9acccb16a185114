from aibridge.cli.main import main

main()
