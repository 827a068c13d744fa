from cli.manage import main

main()
